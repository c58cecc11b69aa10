"""The orders service (shopmesh.order.v1.OrderService), stored in MongoDB (FerretDB locally)."""
