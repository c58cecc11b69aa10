-- The demo catalog the local stack loads into the inventory database at every
-- start (shopmesh_stack.components.Postgres). Idempotent: a product that exists
-- is left as it is (ON CONFLICT DO NOTHING), and only a newly inserted product
-- gets its initial stock's ledger row, so a second start changes nothing.
-- Prices are integer minor units (2999 = 29.99 USD). Not a migration: a
-- production database never gets demo products.
WITH catalog (id, name, description, price_minor, category, image_url, stock) AS (
  VALUES
    ('prod-100', 'Espresso Cups (set of 4)', 'Double-walled glass, 80 ml.', 1999, 'kitchen', 'https://images.shopmesh.example/prod-100.jpg', 150),
    ('prod-101', 'Chef''s Knife 20 cm', 'Forged stainless steel, full tang.', 8900, 'kitchen', 'https://images.shopmesh.example/prod-101.jpg', 60),
    ('prod-102', 'Cast Iron Skillet', 'Pre-seasoned, 26 cm.', 4450, 'kitchen', 'https://images.shopmesh.example/prod-102.jpg', 80),
    ('prod-103', 'Pour-Over Coffee Dripper', 'Ceramic, size 02.', 2400, 'kitchen', 'https://images.shopmesh.example/prod-103.jpg', 120),
    ('prod-104', 'Linen Tea Towels (set of 2)', 'Stonewashed linen.', 1650, 'kitchen', 'https://images.shopmesh.example/prod-104.jpg', 200),
    ('prod-105', 'Wool Throw Blanket', 'Merino wool, 130 x 170 cm.', 12000, 'home', 'https://images.shopmesh.example/prod-105.jpg', 40),
    ('prod-106', 'Ceramic Table Lamp', 'Matte white glaze, linen shade.', 7999, 'home', 'https://images.shopmesh.example/prod-106.jpg', 35),
    ('prod-107', 'Scented Candle', 'Cedar and fig, 40 hours.', 2250, 'home', 'https://images.shopmesh.example/prod-107.jpg', 300),
    ('prod-108', 'Cotton Bath Towel', '600 gsm organic cotton.', 2999, 'home', 'https://images.shopmesh.example/prod-108.jpg', 250),
    ('prod-109', 'Wall Clock', 'Silent sweep movement, 30 cm.', 3500, 'home', 'https://images.shopmesh.example/prod-109.jpg', 70),
    ('prod-110', 'Noise-Cancelling Headphones', 'Over-ear, 30 hours battery.', 19999, 'electronics', 'https://images.shopmesh.example/prod-110.jpg', 45),
    ('prod-111', 'USB-C Charger 65 W', 'Two ports, foldable plug.', 3999, 'electronics', 'https://images.shopmesh.example/prod-111.jpg', 400),
    ('prod-112', 'Mechanical Keyboard', 'Tenkeyless, hot-swappable switches.', 10900, 'electronics', 'https://images.shopmesh.example/prod-112.jpg', 55),
    ('prod-113', 'Wireless Mouse', 'Ergonomic, silent clicks.', 2999, 'electronics', 'https://images.shopmesh.example/prod-113.jpg', 180),
    ('prod-114', 'Portable SSD 1 TB', 'USB 3.2, 1050 MB/s.', 8999, 'electronics', 'https://images.shopmesh.example/prod-114.jpg', 90),
    ('prod-115', 'Trail Running Shoes', 'Lightweight, grippy outsole.', 12999, 'outdoor', 'https://images.shopmesh.example/prod-115.jpg', 75),
    ('prod-116', 'Insulated Water Bottle', 'Stainless steel, 750 ml.', 2799, 'outdoor', 'https://images.shopmesh.example/prod-116.jpg', 350),
    ('prod-117', 'Two-Person Tent', 'Three-season, 2.1 kg.', 24900, 'outdoor', 'https://images.shopmesh.example/prod-117.jpg', 20),
    ('prod-118', 'Headlamp', 'Rechargeable, 400 lumens.', 3450, 'outdoor', 'https://images.shopmesh.example/prod-118.jpg', 160),
    ('prod-119', 'Notebook A5', 'Dotted, 192 pages, lay-flat.', 1400, 'stationery', 'https://images.shopmesh.example/prod-119.jpg', 500),
    ('prod-120', 'Fountain Pen', 'Steel nib, medium.', 4800, 'stationery', 'https://images.shopmesh.example/prod-120.jpg', 85),
    ('prod-121', 'Desk Organizer', 'Walnut, three compartments.', 3900, 'stationery', 'https://images.shopmesh.example/prod-121.jpg', 65),
    ('prod-122', 'Yoga Mat', 'Natural rubber, 4 mm.', 5900, 'sports', 'https://images.shopmesh.example/prod-122.jpg', 110),
    ('prod-123', 'Classic Cotton T-Shirt', 'Heavyweight organic cotton, unisex.', 2999, 'apparel', 'https://images.shopmesh.example/prod-123.jpg', 100000)
),
inserted AS (
    INSERT INTO products (id, name, description, price_minor, currency, category, image_url, initial_stock, on_hand)
    SELECT id, name, description, price_minor, 'USD', category, image_url, stock, stock FROM catalog
    ON CONFLICT (id) DO NOTHING
    RETURNING id, on_hand
)
INSERT INTO stock_ledger (product_id, kind, on_hand_delta, reserved_delta, reason)
SELECT id, 'adjust', on_hand, 0, 'demo catalog: initial stock' FROM inserted WHERE on_hand > 0;
