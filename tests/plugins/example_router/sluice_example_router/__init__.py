"""A tiny router plugin: the split lives in a JSON file (a stand-in for a team's own load balancer).

Installed for the tests by putting tests/plugins/example_router on PYTHONPATH: the `.dist-info`
next to this package declares the `sluice.routers` entry point `example_file`, as `pip install`
of a package with

    [project.entry-points."sluice.routers"]
    example_file = "sluice_example_router.spec:FileRouter"

would. The spec model (spec.py) imports only `sluice.contracts.spec.base`; the router
(router.py) is imported by the worker through `FileRouter.router`.
"""
