"""Network nodes (HTTP request, MCP call): the host checks of the Rust runtime.

The Python face makes no network calls. A URL is checked exactly as the Rust runtime
checks it, so a gym that does not declare a host, or runs with the network off (the
default), gets the same refusal text in both faces.
"""


def _parse_port(p):
    if not p or not (p.isascii() and p.isdigit()):
        return None
    n = int(p)
    return n if n <= 65535 else None


def split_authority(authority):
    """Split `host:port` / `[v6]:port` into its parts."""
    authority = authority.rsplit("@", 1)[-1]
    if authority.startswith("["):
        rest = authority[1:]
        h, _, tail = rest.partition("]") if "]" in rest else (rest, "", "")
        return h, _parse_port(tail[1:]) if tail.startswith(":") else None
    if ":" in authority:
        h, p = authority.rsplit(":", 1)
        return h, _parse_port(p)
    return authority, None


def url_host(url):
    """Host and port of an http(s) URL; raises ValueError saying why it is not one."""
    if "://" not in url:
        raise ValueError(f"{_debug(url)} is not an absolute URL")
    scheme, rest = url.split("://", 1)
    if scheme.lower() not in ("http", "https"):
        raise ValueError(f"scheme {_debug(scheme)} is not allowed (http or https only)")
    authority = rest
    for sep in "/?#":
        authority = authority.split(sep, 1)[0]
    host, port = split_authority(authority)
    if not host:
        raise ValueError(f"{_debug(url)} has no host")
    return host, port


def _split_host_port(entry):
    if entry.startswith("[") and "]" in entry:
        h, tail = entry[1:].split("]", 1)
        return h, _parse_port(tail[1:]) if tail.startswith(":") else None
    if ":" in entry:
        h, p = entry.rsplit(":", 1)
        if ":" not in h:
            port = _parse_port(p)
            return (h, port) if port is not None else (entry, None)
    return entry, None


def _eq_ignore_ascii_case(a, b):
    return len(a) == len(b) and all(
        x == y or (x.isascii() and y.isascii() and x.lower() == y.lower()) for x, y in zip(a, b)
    )


def host_allowed(entries, host, port):
    """`example.com` matches every port, `example.com:8080` one port."""
    host = host.lstrip("[").rstrip("]")
    for entry in entries:
        h, p = _split_host_port(entry)
        if _eq_ignore_ascii_case(h, host) and (p is None or p == port):
            return True
    return False


def check_url(url, declared, allowed):
    """None when the call may go out, else the reason it may not."""
    try:
        host, port = url_host(url)
    except ValueError as e:
        return str(e)
    if not host_allowed(declared, host, port):
        return f"host {host} is not declared by this gym"
    if not host_allowed(allowed, host, port):
        return f"host {host} is not allowed by this node's operator (network is off by default)"
    return None


def _debug(s):
    from .jsontext import rust_debug as _rust_debug

    return _rust_debug(s)
