"""virtctl: a declarative reconciler for libvirt domains and networks."""

__version__ = "0.1.0"
