"""The routing table alone: Kubernetes' matching rules for hosts, path types and precedence."""
from kates.ingress import routes


def ingress(name, rules=(), default=None, tls=(), created="2026-01-01T00:00:00Z", cls="kates", ns="n"):
    spec = {"rules": list(rules), "tls": list(tls)}
    if cls is not None:
        spec["ingressClassName"] = cls
    if default:
        spec["defaultBackend"] = {"service": {"name": default, "port": {"number": 80}}}
    return {"metadata": {"name": name, "namespace": ns, "creationTimestamp": created}, "spec": spec}


def rule(host, *paths):
    return {"host": host, "http": {"paths": [
        {"path": p, "pathType": t, "backend": {"service": {"name": svc, "port": {"number": 80}}}}
        for p, t, svc in paths]}}


def service_of(table, host, path):
    r = table.match(host, path)
    return r.backend.name if r else None


def test_prefix_is_element_wise():
    assert routes.prefix_matches("/foo", "/foo") and routes.prefix_matches("/foo", "/foo/bar")
    assert routes.prefix_matches("/foo/", "/foo") and routes.prefix_matches("/", "/anything")
    assert not routes.prefix_matches("/foo", "/foobar")
    assert not routes.prefix_matches("/foo/bar", "/foo/baz")


def test_longest_path_wins_and_exact_beats_prefix():
    t = routes.build_table([ingress("i", [rule("h", ("/", "Prefix", "root"), ("/api", "Prefix", "api"),
                                              ("/api/v1", "ImplementationSpecific", "v1"),
                                              ("/api", "Exact", "exact"))])])
    assert service_of(t, "h", "/x") == "root"
    assert service_of(t, "h", "/api") == "exact"
    assert service_of(t, "h", "/api/") == "api"
    assert service_of(t, "h", "/api/v1/users") == "v1"
    assert service_of(t, "h", "/apix") == "root"


def test_hosts_exact_wildcard_and_catch_all():
    t = routes.build_table([ingress("i", [rule("a.example.com", ("/", "Prefix", "a")),
                                          rule("*.example.com", ("/", "Prefix", "wild")),
                                          rule("", ("/only", "Prefix", "any"))])])
    assert service_of(t, "A.Example.com:8080", "/") == "a"
    assert service_of(t, "b.example.com", "/") == "wild"
    assert service_of(t, "x.b.example.com", "/") is None, "a wildcard covers exactly one label"
    assert service_of(t, "example.com", "/") is None
    assert service_of(t, "b.example.com", "/only") == "wild"
    assert service_of(t, "other", "/only/x") == "any"


def test_default_backend_and_oldest_wins():
    t = routes.build_table([ingress("new", [rule("h", ("/", "Prefix", "new"))], default="d2",
                                    created="2026-02-01T00:00:00Z"),
                            ingress("old", [rule("h", ("/", "Prefix", "old"))], default="d1")])
    assert service_of(t, "h", "/") == "old"
    assert service_of(t, "nohost", "/") == "d1"


def test_class_selection():
    default_cls = {"metadata": {"name": "kates", "annotations": {routes.DEFAULT_CLASS_ANNOTATION: "true"}}}
    plain_cls = {"metadata": {"name": "kates"}}
    assert routes.is_ours(ingress("i"), plain_cls)
    assert not routes.is_ours(ingress("i", cls="nginx"), default_cls)
    assert routes.is_ours(ingress("i", cls=None), default_cls)
    assert not routes.is_ours(ingress("i", cls=None), plain_cls)


def test_backends_only_ready_endpoints_and_named_ports():
    t = routes.build_table([ingress("i", [rule("h", ("/", "Prefix", "web"), ("/gone", "Prefix", "gone"))])])
    svc = {"metadata": {"name": "web", "namespace": "n"}, "spec": {"ports": [{"name": "http", "port": 80}]}}
    eps = {"addressType": "IPv4", "ports": [{"name": "http", "port": 8080}], "endpoints": [
        {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
        {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
        {"addresses": ["10.0.0.3"], "conditions": {}},
        {"addresses": ["10.0.0.4"], "conditions": {"ready": False, "terminating": True}}]}
    routes.resolve_backends(t, {"n/web": svc}, {"n/web": [eps]})
    assert t.route("h", "/").endpoints == (("10.0.0.1", 8080), ("10.0.0.3", 8080))
    gone = t.route("h", "/gone")
    assert not gone.endpoints and "not found" in gone.missing


def test_tls_by_server_name():
    t = routes.build_table([ingress("i", tls=[{"hosts": ["a.example.com", "*.w.example"], "secretName": "s"}])])
    assert t.tls_secret("a.example.com") == "n/s"
    assert t.tls_secret("x.w.example") == "n/s"
    assert t.tls_secret("b.example.com") is None
