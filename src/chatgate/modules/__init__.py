"""Feature modules, hooked into sessions: roster, presence, offline, disco, ...

Built-ins are listed in `modules.registry.builtin_modules()`; nothing registers
itself on import.
"""
