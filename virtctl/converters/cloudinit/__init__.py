"""A cloud-init NoCloud seed: seed.py renders its files (meta-data, user-data,
network-config) and iso9660.py writes them as the ISO 9660 image a guest reads.

Pure (bytes out). May import only the foundation modules (model, errors, xmlutil, ...).
virtctl/reconciler/load/loadcloudinit.py turns a `cloudInit:` block into the seed volume.
"""
