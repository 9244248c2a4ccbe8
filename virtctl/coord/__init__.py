"""Who may act on a host: locks, coordination between machines, many hosts (docs/fleet.md).

`hostlock.py` is the local per-host lock (the default); `backend.py` holds the host locks
behind one Protocol: that lock directory and etcd leases, with `etcd.py` (the etcd v3
client over etcd's JSON gateway, standard library only), `config.py` (`--coordination
URL` and its credentials) and `hostid.py` (a host named by its identity rather than its
URI). `fleetkeys.py`, `status.py` and `rendezvous.py` are the fleet's keys, status
records and host assignment; `hosts.py` groups specs by host and runs per host.

May import only the foundation modules (model, errors, uri, fileio, printable, xmlutil);
never the reconciler, a driver (a driver is passed in) or anything above.
"""
