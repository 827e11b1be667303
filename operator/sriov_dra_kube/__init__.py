"""The Kubernetes layer shared by the operator, the agent and the test world.

One of each mechanism that talks to (or paces work against) the API server: the
dict-speaking client (:mod:`.client`), the list -> watch -> relist loop
(:mod:`.list_watch`), Events (:mod:`.events`) and the work queue
(:mod:`.workqueue`). The pure core ``sriov_dra`` stays free of kubernetes_asyncio;
this package is where the product meets it.
"""
