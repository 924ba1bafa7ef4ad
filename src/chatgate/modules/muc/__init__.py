"""XEP-0045 multi-user chat: the module (`module.py`), the service and its rooms
(`service.py`, `room.py`, `registry.py`), and the handlers (`dispatch.py`, then
`occupancy.py`, `chat.py`, `admin.py`).  Nothing is imported here, so the
handlers may import each other's modules without going through the package."""
