/**
 * The shopmesh TypeScript client: the generated messages and service descriptors
 * (src/gen, written by `make gen` with protoc-gen-es; never edited by hand) and one
 * helper that connects to the edge over gRPC (Connect's gRPC transport for Node).
 *
 *   const users = createClient(UserService, edgeTransport({ token }));
 *   const me = await users.getMe({});
 */
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

export interface EdgeOptions {
  /** The edge's URL; `make up` serves plaintext h2c on http://127.0.0.1:8080. */
  baseUrl?: string;
  /** A user token from Login or RegisterUser, sent as `authorization: Bearer` on every call. */
  token?: string;
}

/** A gRPC transport to the edge (Envoy), which serves gRPC and REST on one listener. */
export function edgeTransport(options: EdgeOptions = {}): Transport {
  const interceptors: Interceptor[] = [];
  const token = options.token;
  if (token !== undefined) {
    interceptors.push((next) => async (request) => {
      request.header.set("authorization", `Bearer ${token}`);
      return next(request);
    });
  }
  return createGrpcTransport({ baseUrl: options.baseUrl ?? "http://127.0.0.1:8080", interceptors });
}
