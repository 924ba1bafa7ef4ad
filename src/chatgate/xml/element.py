"""The light element type every layer passes around: a name, a namespace, attributes, children.

Owns: the in-memory shape of an XML element (RFC 6120 stanzas and their payloads).
Must not: parse, serialize, validate, know any XMPP semantics, or hold parent pointers
(an element can be moved or shared between trees without bookkeeping).

Conventions:
- `name` is the local name and `ns` the namespace URI ("" for none).
- `attrs` maps attribute names to values.  Attributes in no namespace (nearly all XMPP
  attributes) are keyed by local name; namespaced ones by Clark notation, "{uri}local",
  so xml:lang is "{http://www.w3.org/XML/1998/namespace}lang" (`LANG`).
- `children` is a mixed list of `Element` and `str` text nodes, in document order.  The
  parser never leaves two adjacent text nodes; code that builds trees by hand may, and
  `text` and the serializer do not care.

Hot path: the parser builds one `Element` per start tag, so the class is slotted, the
constructor does no copying or validation, and callers may read and mutate `attrs` and
`children` directly (`el.attrs["from"] = jid`).
"""

from __future__ import annotations

from chatgate.vocabulary import ns as _ns

LANG = "{" + _ns.XML + "}lang"
"""The key of the xml:lang attribute in `Element.attrs`."""


class Element:
    """One XML element.  See the module docstring for the conventions."""

    __slots__ = ("attrs", "children", "name", "ns")

    name: str
    ns: str
    attrs: dict[str, str]
    children: list[Element | str]

    def __init__(
        self,
        name: str,
        ns: str,
        attrs: dict[str, str] | None = None,
        children: list[Element | str] | None = None,
    ) -> None:
        # The dict and list are taken, not copied: the parser hands over fresh ones.
        self.name = name
        self.ns = ns
        self.attrs = {} if attrs is None else attrs
        self.children = [] if children is None else children

    # ------------------------------------------------------------ attributes

    def get(self, attr: str, default: str | None = None) -> str | None:
        """The attribute's value, or `default` when absent."""
        return self.attrs.get(attr, default)

    def set(self, attr: str, value: str | None) -> None:
        """Set an attribute; `None` removes it (no error if it was absent)."""
        if value is None:
            self.attrs.pop(attr, None)
        else:
            self.attrs[attr] = value

    # ------------------------------------------------------------ children

    def find(self, name: str, ns: str | None = None) -> Element | None:
        """The first child element called `name` in `ns` (default: this element's ns)."""
        if ns is None:
            ns = self.ns
        for child in self.children:
            if type(child) is not str and child.name == name and child.ns == ns:  # type: ignore[union-attr]
                return child  # type: ignore[return-value]
        return None

    def find_all(self, name: str | None = None, ns: str | None = None) -> list[Element]:
        """Child elements called `name` (any name when None) in `ns`.

        As in `find` and `sub`, `ns=None` means this element's namespace: XMPP payloads
        are identified by namespace, so the default never matches foreign elements.
        Iterate `children` to see elements of every namespace.
        """
        if ns is None:
            ns = self.ns
        return [
            c  # type: ignore[misc]
            for c in self.children
            if type(c) is not str and c.ns == ns and (name is None or c.name == name)  # type: ignore[union-attr]
        ]

    @property
    def text(self) -> str:
        """The concatenated direct text children ("" when there are none)."""
        children = self.children
        if len(children) == 1 and type(children[0]) is str:
            return children[0]
        return "".join([c for c in children if type(c) is str])

    def set_text(self, text: str | None) -> None:
        """Replace every direct text child by `text` (child elements are kept)."""
        kept: list[Element | str] = [c for c in self.children if type(c) is not str]
        if text:
            kept.insert(0, text)
        self.children = kept

    def append(self, child: Element | str) -> Element | str:
        """Add `child` at the end and return it (text is merged with a trailing text node)."""
        children = self.children
        if type(child) is str and children and type(children[-1]) is str:
            children[-1] += child
        else:
            children.append(child)
        return child

    def sub(
        self,
        name: str,
        ns: str | None = None,
        attrs: dict[str, str] | None = None,
        text: str | None = None,
    ) -> Element:
        """Append and return a new child element (namespace defaults to this element's)."""
        child = Element(name, self.ns if ns is None else ns, attrs)
        if text:
            child.children.append(text)
        self.children.append(child)
        return child

    def copy(self) -> Element:
        """A deep copy: mutating the copy (attributes, children, descendants) leaves self intact."""
        return Element(
            self.name,
            self.ns,
            dict(self.attrs),
            [c if type(c) is str else c.copy() for c in self.children],  # type: ignore[union-attr]
        )

    # ------------------------------------------------------------ display

    def __repr__(self) -> str:
        count = len(self.children)
        return f"<Element {{{self.ns}}}{self.name} attrs={len(self.attrs)} children={count}>"
