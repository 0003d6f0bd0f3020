// The contract's page size through a real client: Apollo Client (which adds __typename to every
// selection) asks for a page of 100 with every field of the node, edges and nodes together, on
// `me`, `users` (as the admin) and `verifyCode`. The default limits must admit each one
// (docs/tools.md, "Query limits"); the Rust suite checks the arithmetic and the refusals.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client/core";

import { freshPhone, gql as post, graphqlUrl } from "./support.js";

const ADMIN = "+79990000001"; // run.sh's ADMIN_PHONES

const ROW = `id phone inviteCode activatedInviteCode createdAt invitedUsers { totalCount }`;
const PAGE = `(first: 100) {
  totalCount
  edges { cursor node { ${ROW} } }
  nodes { ${ROW} }
  pageInfo { hasNextPage endCursor }
}`;
const USER = `id phone inviteCode activatedInviteCode createdAt invitedUsers${PAGE}`;

function client(token) {
  return new ApolloClient({
    link: new HttpLink({
      uri: graphqlUrl,
      headers: token ? { authorization: `Bearer ${token}` } : {},
    }),
    cache: new InMemoryCache(),
    defaultOptions: { query: { fetchPolicy: "no-cache" } },
  });
}

async function signIn(phone) {
  const requested = await post(
    "mutation($phone: String!) { requestCode(phone: $phone) { devCode } }",
    { phone },
  );
  const code = requested.data.requestCode.devCode;
  const verified = await client().mutate({
    mutation: gql(`mutation VerifyMax($phone: String!, $code: String!) {
      verifyCode(phone: $phone, code: $code) {
        accessToken refreshToken tokenType expiresIn isNewUser user { ${USER} }
      }
    }`),
    variables: { phone, code },
  });
  assert.equal(verified.data.verifyCode.user.invitedUsers.edges.length, 0);
  return verified.data.verifyCode.accessToken;
}

test("a page of 100 with every field passes the limits: me, users, verifyCode", async () => {
  const token = await signIn(freshPhone());
  const me = await client(token).query({ query: gql(`query MeMax { me { ${USER} } }`) });
  assert.ok(me.data.me.id);
  assert.equal(me.data.me.invitedUsers.totalCount, 0);

  const admin = await signIn(ADMIN);
  const users = await client(admin).query({ query: gql(`query UsersMax { users${PAGE} }`) });
  assert.ok(users.data.users.totalCount >= 2);
  assert.equal(users.data.users.edges.length, users.data.users.nodes.length);
});
