"""The media-stream authority: deciding who may publish and who may play a live
stream, on the same accounts as chat (issue 12).

For now this package holds sans-I/O building blocks only: the signed stream token
(`tokens`) and Wowza's TEA cipher (`xxtea`).  They never await, never read the
clock and never touch storage.  The policy core, the live registry and the
media-server adapters (nginx-rtmp, MediaMTX, SRS, Red5 Pro, Wowza) come later.
"""
