"""XEP-0114 external components: programs that connect to the component listener,
prove a shared secret with the handshake, and then serve a whole domain.

- `handshake.py`: the handshake digest and its constant-time check (pure);
- `stream.py`: the component stream's state machine, events in, actions out (sans-I/O);
- `locator.py`: which node holds which component (the seam; in-process);
- `cluster.py`: the same in Redis, and stanzas relayed to the node holding a component;
- `routing.py`: where a stanza a component sent goes (through the router);
- `connection.py`: the asyncio adapter of one component connection;
- `hub.py`: the configured components, their domains in the router, the listener;
- `describe.py`: what `chatgate check` prints about them.
"""
