"""fastmicro's published language: the event schemas of docs/contract.md, shared by producers and consumers.

Each class is registered in `fastmicro.events.registry` under its (type, version), which is how
a consumer turns an envelope back into an event. A new incompatible shape is a new class with a
new `version`; the old one stays until no producer emits it.
"""
