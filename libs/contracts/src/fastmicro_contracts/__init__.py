"""fastmicro's published language: the event schemas of docs/contract.md, shared by producers and consumers.

Each class is registered in `fastmicro.events.registry` under its (type, version), which is how
a consumer turns an envelope back into an event. A new incompatible shape is a new class with a
new `version` and an upcaster from the old one (`@upcaster`, beside the classes): consumers read
the new version first, then the producer switches. The old class stays: its messages may still be
queued or dead-lettered, and are upcast on arrival.
"""
