"""The media-stream authority: deciding who may publish and who may play a live
stream, on the same accounts as chat (issue 12).

For now this package holds building blocks that the media-server adapters
(nginx-rtmp, MediaMTX, SRS, Red5 Pro, Wowza), still to come, will share:

* `policy`: stream names (validated, never repaired), rules and the decision core;
* `tokens`: the signed, expiring stream token;
* `live`: the live registry (`LiveStreams`, an interface a shared store can
  implement; `LocalLiveStreams` in process);
* `xxtea`: Wowza's TEA cipher, for its token provider.

`policy`, `tokens` and `xxtea` never await, never read the clock and never
touch storage.
"""
