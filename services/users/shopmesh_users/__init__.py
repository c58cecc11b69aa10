"""The users service (shopmesh.user.v1.UserService)."""
