"""Coordination between virtctl runs on different machines (docs/fleet.md).

`etcd.py` is the etcd v3 client (etcd's JSON gateway over HTTP, standard library only),
`config.py` reads `--coordination URL` and its credentials, `hostid.py` names a host by
its identity rather than its URI, and `backend.py` holds the host locks: the local lock
directory (hostlock.py, the default) and etcd leases.
"""
