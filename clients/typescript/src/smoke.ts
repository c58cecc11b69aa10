/**
 * Smoke program of the TypeScript client: one session against a running shopmesh,
 * through the edge's gRPC listener.
 *
 * Registers, logs in, reads the account back (GetMe, GetUser), and decodes the error
 * of an invalid registration (ErrorInfo reason, BadRequest field violations). With
 * --with-orders it also lists products, places an order and reads it back. Prints one
 * JSON object with what it saw; exits non-zero when a step fails.
 *
 *   node dist/smoke.js --edge http://127.0.0.1:8080 --email ada@example.com --password 'correct horse battery'
 */
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";

import { Code, ConnectError, createClient } from "@connectrpc/connect";

import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import { InventoryService } from "./gen/shopmesh/inventory/v1/inventory_service_pb.js";
import { OrderService, OrderStatus } from "./gen/shopmesh/order/v1/order_service_pb.js";
import { UserService } from "./gen/shopmesh/user/v1/user_service_pb.js";
import { edgeTransport } from "./index.js";

const timeoutMs = 15_000;

function check(condition: boolean, message: string): void {
  if (!condition) {
    throw new Error(`smoke: ${message}`);
  }
}

/** InvalidArgument -> INVALID_ARGUMENT, as the other clients spell codes. */
function codeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

function decodeError(error: unknown): Record<string, unknown> {
  const connectError = ConnectError.from(error);
  const [info] = connectError.findDetails(ErrorInfoSchema);
  const violations = connectError
    .findDetails(BadRequestSchema)
    .flatMap((badRequest) => badRequest.fieldViolations.map((v) => v.field))
    .sort();
  return {
    errorCode: codeName(connectError.code),
    errorReason: info?.reason ?? "",
    errorDomain: info?.domain ?? "",
    violations,
  };
}

async function orders(baseUrl: string, token: string, userId: string): Promise<Record<string, unknown>> {
  const transport = edgeTransport({ baseUrl, token });
  const products = await createClient(InventoryService, transport).listProducts({ pageSize: 10 }, { timeoutMs });
  const product = products.products.find((p) => p.stockAvailable > 0);
  check(product !== undefined, "ListProducts returned no product in stock");
  const stub = createClient(OrderService, transport);
  const created = await stub.createOrder(
    {
      userId,
      items: [{ productId: product!.id, quantity: 1, price: product!.price }],
      shippingAddress: { street: "1 Analytical Way", city: "London", state: "LDN", zipCode: "N1 9GU", country: "GB" },
      requestId: randomUUID(),
    },
    { timeoutMs },
  );
  const read = await stub.getOrder({ id: created.id }, { timeoutMs });
  check(read.id === created.id && read.userId === userId, "GetOrder did not return the order just created");
  return { productId: product!.id, orderId: read.id, orderStatus: OrderStatus[read.status] };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      edge: { type: "string", default: "http://127.0.0.1:8080" },
      email: { type: "string" },
      password: { type: "string" },
      "with-orders": { type: "boolean", default: false },
    },
  });
  const { edge, email, password } = values;
  check(email !== undefined && password !== undefined, "--email and --password are required");

  const users = createClient(UserService, edgeTransport({ baseUrl: edge }));
  const registered = await users.registerUser(
    { email: email!, password: password!, firstName: "Ada", lastName: "Lovelace" },
    { timeoutMs },
  );
  const login = await users.login({ email: email!, password: password! }, { timeoutMs });
  let refused: Record<string, unknown> | undefined;
  try {
    await users.registerUser({ email: "not-an-email", password: "x", firstName: "A", lastName: "L" }, { timeoutMs });
  } catch (error) {
    refused = decodeError(error);
  }
  check(refused !== undefined, "an invalid registration was accepted");

  const signedIn = createClient(UserService, edgeTransport({ baseUrl: edge, token: login.token }));
  const me = await signedIn.getMe({}, { timeoutMs });
  check(me.id === registered.user?.id, "GetMe is not the registered account");
  const again = await signedIn.getUser({ id: me.id }, { timeoutMs });
  check(again.email === me.email, "GetUser disagrees with GetMe");

  let result: Record<string, unknown> = { userId: me.id, email: me.email, ...refused };
  if (values["with-orders"]) {
    result = { ...result, ...(await orders(edge!, login.token, me.id)) };
  }
  console.log(JSON.stringify(result));
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
