"""The cluster DNS: Services, endpoints and pods answered from watch-fed memory, everything else forwarded to the
host's resolvers (records.py: the names; server.py: UDP/TCP and forwarding; addon.py: kube-system/kube-dns;
main.py: `kates dns`)."""
