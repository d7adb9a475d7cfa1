"""The Ingress controller for IngressClass `kates`: HTTP(S) routing by host, path and TLS server name from the node's
ports 80 and 443 to the ready endpoints of Services (`routes` the matching rules, `controller` the watches and
status, `proxy` the data path, `main` the `kates ingress` process)."""
