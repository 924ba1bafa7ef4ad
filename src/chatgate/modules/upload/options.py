"""`[modules.upload]`: XEP-0363 HTTP file upload."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chatgate.modules.upload.slots import MEDIA_TYPE


class UploadOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = True
    """Offer HTTP file upload on ``<subdomain>.<host>`` of every host with accounts
    (needs the HTTP listener, `[http] enabled`)."""
    subdomain: str = "upload"
    """The service's domain is this label, a dot, and the host (``upload.example.org``)."""
    url: str | None = None
    """Public base URL of the HTTP listener as clients reach it (e.g. behind a proxy:
    ``https://files.example.org``); unset: ``https://<host>:<[http] tls_port>``, or
    ``http://<host>:<[http] port>`` without an HTTPS port."""
    max_file_size: Annotated[int, Field(ge=1)] = 10 * 1024 * 1024
    """Largest file, in bytes (announced in disco#info; bigger requests get
    ``file-too-large``)."""
    quota: Annotated[int, Field(ge=1)] = 100 * 1024 * 1024
    """Bytes one account's files (and slots not yet used) may hold until they expire."""
    expiry: Annotated[int, Field(ge=60)] = 7 * 86400
    """Seconds a file is kept after its slot was given; then the purge deletes it."""
    put_timeout: Annotated[int, Field(ge=10, le=86400)] = 300
    """Seconds a slot waits for its PUT to begin."""
    max_slots_per_minute: Annotated[int, Field(ge=1)] = 30
    """Slots one account may get in a minute (past it: ``resource-constraint``, with
    a retry time)."""
    allowed_types: list[str] = []
    """Media types accepted (``image/*`` names a whole type); empty: any."""
    purge_interval: Annotated[int, Field(ge=10)] = 600
    """Seconds between purges of expired files and unused slots."""

    @field_validator("subdomain")
    @classmethod
    def _label(cls, value: str) -> str:
        if (
            not value
            or "." in value
            or not value.replace("-", "").isalnum()
            or value != value.lower()
        ):
            raise ValueError("one lower-case DNS label, e.g. upload")
        return value

    @field_validator("allowed_types")
    @classmethod
    def _types(cls, values: list[str]) -> list[str]:
        for value in values:
            if not MEDIA_TYPE.fullmatch(value) or ";" in value:
                raise ValueError(f"{value!r} is not a media type (type/subtype or type/*)")
        return [v.lower() for v in values]

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("an http:// or https:// URL")
        return value
