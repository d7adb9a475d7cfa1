"""kube-proxy for kates: Services (ClusterIP, NodePort, LoadBalancer, externalIPs) programmed into the kernel.

proxier.py decides (watches → service ports with usable endpoints), nftables.py / iptables.py program the data
plane, conntrack.py forgets stale UDP flows, servicelb.py gives LoadBalancer Services an address, main.py runs it all
as `kates proxy`.
"""
