"""The payments service (shopmesh.payment.v1.PaymentService)."""
