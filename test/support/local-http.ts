import type { IncomingMessage, Server } from "node:http";
import type { AddressInfo, Server as NetServer } from "node:net";

// The local HTTP servers the suites stand up (receivers, siteverify, a
// gateway under test, a forged JWKS): listened on an ephemeral port of
// 127.0.0.1, closed with whatever connections they still hold.

/** Listens on 127.0.0.1 at an ephemeral port; returns the base URL ("http://127.0.0.1:port"). */
export async function listenLocal(server: NetServer): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Closes `server` and every connection it still holds (keep-alive ones included). */
export function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** The whole body of a node:http request or response, as UTF-8 text. */
export function readText(message: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    message.setEncoding("utf8");
    message.on("data", (chunk: string) => (text += chunk));
    message.on("end", () => resolve(text));
    message.on("error", reject);
  });
}
