// The whole sign-in and invite flow through Apollo Client (its framework-free core, as a
// non-React app or a server-side client uses it): requestCode -> verifyCode with devCode -> me
// -> activateInvite between users (with the inviter subscribed to invitedUserJoined over
// graphql-ws) -> invitedUsers pagination -> refreshToken -> logout.
//
// Apollo's HttpLink asks for application/graphql-response+json first, so this also runs the
// server's newer media type and its status codes through a real client.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ApolloClient,
  ApolloLink,
  CombinedGraphQLErrors,
  HttpLink,
  InMemoryCache,
} from "@apollo/client/core";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

import {
  ACTIVATE_INVITE,
  INVITED_USER_JOINED,
  LOGOUT,
  ME,
  REFRESH,
  REQUEST_CODE,
  VERIFY_CODE,
} from "./app-operations.js";
import { freshPhone, graphqlUrl } from "./support.js";

/** One Apollo client per user, as separate apps would have; no cache between calls. */
function client(accessToken) {
  const http = new HttpLink({
    uri: graphqlUrl,
    headers: accessToken ? { authorization: `Bearer ${accessToken}` } : {},
  });
  return new ApolloClient({
    link: ApolloLink.from([http]),
    cache: new InMemoryCache(),
    defaultOptions: {
      query: { fetchPolicy: "no-cache" },
      watchQuery: { fetchPolicy: "no-cache" },
    },
  });
}

/** The extensions.code of the GraphQL error an Apollo call threw. */
async function errorCode(promise) {
  try {
    await promise;
  } catch (error) {
    assert.ok(CombinedGraphQLErrors.is(error), `a GraphQL error, got ${error}`);
    return error.errors[0]?.extensions?.code;
  }
  assert.fail("the call succeeded");
}

async function signIn(phone) {
  const anonymous = client();
  const { data: requested } = await anonymous.mutate({
    mutation: REQUEST_CODE,
    variables: { phone },
  });
  assert.equal(requested.requestCode.phone, phone);
  assert.match(requested.requestCode.devCode, /^\d{4,8}$/, "OTP_EXPOSE is on: devCode is set");
  const { data } = await anonymous.mutate({
    mutation: VERIFY_CODE,
    variables: { phone, code: requested.requestCode.devCode },
  });
  const auth = data.verifyCode;
  assert.equal(auth.tokenType, "Bearer");
  assert.ok(auth.expiresIn > 0);
  assert.equal(auth.isNewUser, true);
  assert.match(auth.user.inviteCode, /^[A-Za-z0-9]{6}$/);
  return auth;
}

test("the whole flow through Apollo Client", async (t) => {
  const alice = await signIn(freshPhone());
  const bob = await signIn(freshPhone());
  const carol = await signIn(freshPhone());

  // me, with and without a token.
  const { data: me } = await client(alice.accessToken).query({ query: ME });
  assert.equal(me.me.id, alice.user.id);
  assert.equal(me.me.inviteCode, alice.user.inviteCode);
  assert.equal(me.me.activatedInviteCode, null);
  assert.equal(me.me.invitedUsers.totalCount, 0);
  assert.equal(await errorCode(client().query({ query: ME })), "UNAUTHENTICATED");

  // Alice listens for invitees over WebSocket (graphql-transport-ws), the token in
  // connection_init, as the contract says.
  const ws = createClient({
    url: graphqlUrl.replace(/^http/, "ws"),
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: `Bearer ${alice.accessToken}` },
    lazy: false,
  });
  const subscriber = new ApolloClient({
    link: new GraphQLWsLink(ws),
    cache: new InMemoryCache(),
  });
  const joined = [];
  let subscribed;
  const started = new Promise((resolve) => (subscribed = resolve));
  const subscription = subscriber.subscribe({ query: INVITED_USER_JOINED }).subscribe({
    next: (result) => joined.push(result.data?.invitedUserJoined),
    error: (error) => joined.push(error),
  });
  t.after(async () => {
    subscription.unsubscribe();
    await ws.dispose();
  });
  ws.on("connected", () => subscribed());
  await started;
  // The subscription reaches the server's event stream a moment after the socket connects.
  await new Promise((resolve) => setTimeout(resolve, 500));

  // Bob and Carol enter Alice's code (any case); nobody may enter their own twice or their own.
  for (const user of [bob, carol]) {
    const { data } = await client(user.accessToken).mutate({
      mutation: ACTIVATE_INVITE,
      variables: { inviteCode: alice.user.inviteCode.toLowerCase() },
    });
    assert.equal(data.activateInvite.id, user.user.id);
    assert.equal(data.activateInvite.activatedInviteCode, alice.user.inviteCode);
  }
  assert.equal(
    await errorCode(
      client(bob.accessToken).mutate({
        mutation: ACTIVATE_INVITE,
        variables: { inviteCode: carol.user.inviteCode },
      }),
    ),
    "INVITE_ALREADY_ACTIVATED",
  );
  assert.equal(
    await errorCode(
      client(alice.accessToken).mutate({
        mutation: ACTIVATE_INVITE,
        variables: { inviteCode: alice.user.inviteCode },
      }),
    ),
    "SELF_INVITE",
  );

  // invitedUsers, one per page: Bob, then Carol, oldest first.
  const page1 = (await client(alice.accessToken).query({ query: ME, variables: { first: 1 } }))
    .data.me.invitedUsers;
  assert.equal(page1.totalCount, 2);
  assert.deepEqual(
    page1.nodes.map((u) => u.id),
    [bob.user.id],
  );
  assert.equal(page1.pageInfo.hasNextPage, true);
  const page2 = (
    await client(alice.accessToken).query({
      query: ME,
      variables: { first: 1, after: page1.pageInfo.endCursor },
    })
  ).data.me.invitedUsers;
  assert.deepEqual(
    page2.nodes.map((u) => u.id),
    [carol.user.id],
  );
  assert.equal(page2.pageInfo.hasNextPage, false);
  assert.equal(
    await errorCode(client(alice.accessToken).query({ query: ME, variables: { first: 101 } })),
    "BAD_USER_INPUT",
  );

  // The subscription saw both, in order.
  for (let i = 0; i < 50 && joined.length < 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.deepEqual(
    joined.map((u) => u?.id),
    [bob.user.id, carol.user.id],
  );

  // refreshToken rotates: the new pair works, then logout revokes it.
  const { data: refreshed } = await client().mutate({
    mutation: REFRESH,
    variables: { refreshToken: alice.refreshToken },
  });
  const pair = refreshed.refreshToken;
  assert.notEqual(pair.refreshToken, alice.refreshToken);
  const { data: again } = await client(pair.accessToken).query({ query: ME });
  assert.equal(again.me.id, alice.user.id);

  const { data: loggedOut } = await client().mutate({
    mutation: LOGOUT,
    variables: { refreshToken: pair.refreshToken },
  });
  assert.equal(loggedOut.logout, true);
  assert.equal(
    await errorCode(
      client().mutate({ mutation: REFRESH, variables: { refreshToken: pair.refreshToken } }),
    ),
    "UNAUTHENTICATED",
  );
  // The rotated-away token is dead too.
  assert.equal(
    await errorCode(
      client().mutate({ mutation: REFRESH, variables: { refreshToken: alice.refreshToken } }),
    ),
    "UNAUTHENTICATED",
  );
});
