"""`make bench-platform`: the platform's cost per call, measured against a bare grpc.aio server."""
