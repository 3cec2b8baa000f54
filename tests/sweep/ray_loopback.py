"""`ray start` bound to 127.0.0.1 for the two-node test: Ray on Linux swaps a loopback
--node-ip-address for this machine's network address; this keeps the one given.

    python tests/sweep/ray_loopback.py start --head --node-ip-address 127.0.0.1 ...

The processes it starts see RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (set by the test), Ray's own
single-machine switch, which makes them bind and advertise 127.0.0.1 too; joining a second node
is refused under that switch, so this process alone turns it back on.
"""

import sys

import ray._private.ray_constants as constants
import ray._private.services as services
from ray.scripts.scripts import main

constants.ENABLE_RAY_CLUSTER = True
services.resolve_ip_for_localhost = lambda host: host

if __name__ == "__main__":
    sys.argv = ["ray", *sys.argv[1:]]
    main()
