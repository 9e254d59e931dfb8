"""All I/O of a rollout: traffic routers and metric providers behind small interfaces."""
