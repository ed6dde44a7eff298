"""The fault suite (`python -m faults`, `make faults`): the real processes under faults, every sink counted.
Not part of the runtime: it drives the service from outside, as an operator would (docs/RELIABILITY.md)."""
