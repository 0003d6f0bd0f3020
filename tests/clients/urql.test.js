// A signed-in query through @urql/core. urql sends short queries as GET /graphql?query=…
// (`preferGetMethod: 'within-url-limit'`, its default) and mutations as POST, and asks for
// application/graphql-response+json first: both GraphQL-over-HTTP paths through a real client.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Client, fetchExchange, gql } from "@urql/core";

import { freshPhone, graphqlUrl } from "./support.js";

/** Records every request urql makes, so the test can tell GET from POST. */
function recordingFetch(log) {
  return (input, init = {}) => {
    log.push({ method: init.method ?? "GET", url: String(input) });
    return fetch(input, init);
  };
}

function client(log, accessToken) {
  return new Client({
    url: graphqlUrl,
    exchanges: [fetchExchange],
    requestPolicy: "network-only",
    fetch: recordingFetch(log),
    fetchOptions: () =>
      accessToken ? { headers: { authorization: `Bearer ${accessToken}` } } : {},
  });
}

test("a signed-in query through urql, over GET", async () => {
  const log = [];
  const anonymous = client(log);
  const phone = freshPhone();

  const requested = await anonymous
    .mutation(
      gql`
        mutation ($phone: String!) {
          requestCode(phone: $phone) {
            devCode
          }
        }
      `,
      { phone },
    )
    .toPromise();
  assert.equal(requested.error, undefined, String(requested.error));
  const verified = await anonymous
    .mutation(
      gql`
        mutation ($phone: String!, $code: String!) {
          verifyCode(phone: $phone, code: $code) {
            accessToken
            user {
              id
            }
          }
        }
      `,
      { phone, code: requested.data.requestCode.devCode },
    )
    .toPromise();
  assert.equal(verified.error, undefined, String(verified.error));
  const { accessToken, user } = verified.data.verifyCode;

  const me = await client(log, accessToken)
    .query(
      gql`
        query {
          me {
            id
            phone
            invitedUsers {
              totalCount
            }
          }
        }
      `,
      {},
    )
    .toPromise();
  assert.equal(me.error, undefined, String(me.error));
  assert.equal(me.data.me.id, user.id);
  assert.equal(me.data.me.phone, phone);
  assert.equal(me.data.me.invitedUsers.totalCount, 0);

  // The mutations went by POST, the query by GET.
  assert.deepEqual(
    log.map((entry) => entry.method),
    ["POST", "POST", "GET"],
  );

  // Without the token the same query is a GraphQL error urql reports with its code.
  const anonymousMe = await client(log)
    .query(
      gql`
        query {
          me {
            id
          }
        }
      `,
      {},
    )
    .toPromise();
  assert.equal(anonymousMe.error?.graphQLErrors[0]?.extensions?.code, "UNAUTHENTICATED");
});
