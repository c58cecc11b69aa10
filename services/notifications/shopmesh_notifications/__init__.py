"""The notifications service (shopmesh.notification.v1.NotificationService)."""
