// The WebSocket door through graphql-ws (the client Apollo's GraphQLWsLink and urql's
// subscriptionExchange use): subscriptions only, and a socket that ends with its sign-in, after
// which the client reconnects through `connectionParams` as a function (the documented pattern).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

import { freshPhone, gql, graphqlUrl } from "./support.js";

const wsUrl = graphqlUrl.replace(/^http/, "ws");

async function signIn(phone) {
  const requested = await gql(
    "mutation ($phone: String!) { requestCode(phone: $phone) { devCode } }",
    { phone },
  );
  const code = requested.data.requestCode.devCode;
  const verified = await gql(
    "mutation ($phone: String!, $code: String!) { verifyCode(phone: $phone, code: $code) { accessToken refreshToken } }",
    { phone, code },
  );
  return verified.data.verifyCode;
}

/** Runs one operation over the socket; resolves with its errors (or [] when it completed). */
function run(client, query) {
  return new Promise((resolve) => {
    const seen = [];
    client.subscribe(
      { query },
      {
        next: (result) => seen.push(...(result.errors ?? [])),
        error: (errors) => resolve(Array.isArray(errors) ? errors : [errors]),
        complete: () => resolve(seen),
      },
    );
  });
}

test("queries and mutations over the socket are refused and run nothing", async (t) => {
  const client = createClient({ url: wsUrl, webSocketImpl: WebSocket, lazy: true });
  t.after(() => client.dispose());
  const phone = freshPhone();

  const errors = await run(client, `mutation { requestCode(phone: "${phone}") { devCode } }`);
  assert.equal(errors[0]?.extensions?.code, "BAD_USER_INPUT");
  assert.match(errors[0].message, /send queries and mutations over HTTP/);
  assert.ok(errors[0].extensions.requestId, "socket errors carry the request id");

  // Nothing ran: the phone is not in its resend cooldown.
  const requested = await gql("mutation ($phone: String!) { requestCode(phone: $phone) { phone } }", {
    phone,
  });
  assert.equal(requested.errors, undefined, JSON.stringify(requested.errors));
});

/** The first result (or error) of a subscription. */
function firstOf(client, query) {
  return new Promise((resolve) => {
    const unsubscribe = client.subscribe(
      { query },
      {
        next: (result) => {
          unsubscribe();
          resolve({ result });
        },
        error: (error) => resolve({ error }),
        complete: () => resolve({}),
      },
    );
  });
}

// graphql-ws never retries a 4401 close by itself (it counts as fatal): the subscription gets
// the close event as its error. The app refreshes its token and subscribes again; the client
// opens a new socket and calls connectionParams (a function) again, reading the new token.
test("logoutAll closes the socket with 4401; resubscribing reconnects with the current token", async (t) => {
  const alice = await signIn(freshPhone());
  let currentToken = alice.accessToken; // the app's token store
  let initCalls = 0;
  const client = createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    connectionParams: () => {
      initCalls += 1;
      return { Authorization: `Bearer ${currentToken}` };
    },
  });
  t.after(() => client.dispose());
  const JOINED = "subscription { invitedUserJoined { id } }";

  const connected = new Promise((resolve) => client.on("connected", resolve));
  const first = firstOf(client, JOINED);
  await connected;
  await new Promise((resolve) => setTimeout(resolve, 300));
  const loggedOut = await gql("mutation { logoutAll }", {}, alice.accessToken);
  assert.equal(loggedOut.data.logoutAll, 1);
  const { error } = await first;
  assert.equal(error?.code, 4401, `closed with ${error?.code}`);

  // The app gets a fresh token (here by signing in again, as another account: one phone's
  // resend cooldown is 60 s) and subscribes again.
  const bob = await signIn(freshPhone());
  currentToken = bob.accessToken;
  const reconnected = new Promise((resolve) => client.on("connected", resolve));
  const next = firstOf(client, "subscription { invitedUserJoined { id inviteCode } }");
  await reconnected;
  assert.equal(initCalls, 2, "connectionParams was called again for the new socket");
  await new Promise((resolve) => setTimeout(resolve, 300));
  const me = await gql("{ me { inviteCode } }", {}, bob.accessToken);
  const carol = await signIn(freshPhone());
  const activated = await gql(
    "mutation ($c: String!) { activateInvite(inviteCode: $c) { id } }",
    { c: me.data.me.inviteCode },
    carol.accessToken,
  );
  assert.equal(activated.errors, undefined, JSON.stringify(activated.errors));
  const { result } = await next;
  assert.equal(result?.data?.invitedUserJoined?.id, activated.data.activateInvite.id);
});
