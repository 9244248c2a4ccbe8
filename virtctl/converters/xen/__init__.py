"""Xen xm/xl config files <-> libvirt domain XML (docs/xen-conversion.md).

xm.py holds the entry points (`xm_to_xml`, `xml_to_xm`, and the xl wrappers) and xm's
dialect; xl.py the xl dialect (with xldisk.py, xlextras.py, xlcpu.py for what xl adds).
xmparse.py reads the config syntax, xmbase.py holds what readers and writers share,
xmread.py / xmwrite.py the shared keys, xmdisk.py, xmvif.py, xmchardev.py and xmdev.py
the device strings. Imports point one way: xm -> xl -> device modules -> xmbase ->
xmparse.

Pure. May import only the foundation modules (errors, xmlutil, limits).
"""
