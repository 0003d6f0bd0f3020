// What the Apollo Client flows share: a client as an app builds one (bearer token, optionally a
// User-Agent of its own), with the cache out of the way, and the first GraphQL error of a call.
import assert from "node:assert/strict";
import {
  ApolloClient,
  CombinedGraphQLErrors,
  HttpLink,
  InMemoryCache,
} from "@apollo/client/core";

import { graphqlUrl } from "./support.js";

/** An Apollo Client that sends `accessToken` (if any) and `userAgent` (if any). */
export function apolloClient({ accessToken, userAgent } = {}) {
  const headers = {};
  if (accessToken) headers.authorization = `Bearer ${accessToken}`;
  if (userAgent) headers["user-agent"] = userAgent;
  return new ApolloClient({
    link: new HttpLink({ uri: graphqlUrl, headers }),
    cache: new InMemoryCache(),
    defaultOptions: {
      query: { fetchPolicy: "no-cache" },
      watchQuery: { fetchPolicy: "no-cache" },
    },
  });
}

/** The first GraphQL error an Apollo call threw. */
export async function graphqlError(promise) {
  try {
    await promise;
  } catch (error) {
    assert.ok(CombinedGraphQLErrors.is(error), `a GraphQL error, got ${error}`);
    return error.errors[0];
  }
  assert.fail("the call succeeded");
}
