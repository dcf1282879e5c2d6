"""HTTP headers: a case-insensitive multi-valued mapping (websockets' ``Headers``)."""

__all__ = ["Headers"]


class Headers:
    """Header fields in order; ``headers[name]`` is the value of the only
    field of that name (KeyError if none; an error if several)."""

    def __init__(self, *args, **kwargs):
        self._items = []
        for arg in args:
            self.update(arg)
        self.update(kwargs)

    def update(self, other):
        items = other.raw_items() if isinstance(other, Headers) else (
            other.items() if hasattr(other, "items") else other)
        for name, value in items:
            self[name] = value

    def raw_items(self):
        return list(self._items)

    def items(self):
        return [(name.lower(), value) for name, value in self._items]

    def get_all(self, name):
        name = name.lower()
        return [value for key, value in self._items if key.lower() == name]

    def get(self, name, default=None):
        values = self.get_all(name)
        return values[0] if values else default

    def __getitem__(self, name):
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        if len(values) > 1:
            raise KeyError("multiple %s headers" % name)
        return values[0]

    def __setitem__(self, name, value):
        self._items.append((str(name), str(value)))

    def __delitem__(self, name):
        lowered = name.lower()
        self._items = [(key, value) for key, value in self._items if key.lower() != lowered]

    def __contains__(self, name):
        return bool(self.get_all(name))

    def __iter__(self):
        seen = []
        for key, _ in self._items:
            if key.lower() not in seen:
                seen.append(key.lower())
        return iter(seen)

    def __len__(self):
        return len(self._items)

    def __str__(self):
        return "".join("%s: %s\r\n" % item for item in self._items) + "\r\n"

    def __repr__(self):
        return "Headers(%r)" % (self._items,)
