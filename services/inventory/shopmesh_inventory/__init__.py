"""The inventory service (shopmesh.inventory.v1.InventoryService)."""
