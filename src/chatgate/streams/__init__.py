"""The media-stream authority: deciding who may publish and who may play a live
stream, on the same accounts as chat (issue 12).

For now this package holds the authority's building blocks; the service that
joins them and the HTTP routes under `/hooks/` come next:

* `policy`: stream names (validated, never repaired), rules and the decision core;
* `tokens`: the signed, expiring stream token;
* `live`: the live registry (`LiveStreams`, an interface a shared store can
  implement; `LocalLiveStreams` in process);
* `xxtea`: Wowza's TEA cipher, for its token provider;
* `adapters`: each media server's exact requests read into one question, and
  the authority's verdict written as the response it accepts (nginx-rtmp,
  MediaMTX, SRS, Red5 Pro, Wowza).

`policy`, `tokens`, `xxtea` and `adapters` never await, never read the clock and never
touch storage.
"""
