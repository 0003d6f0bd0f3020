// What every test file shares: where the server is (run.sh starts it and sets PHONE_AUTH_URL)
// and a few plain-fetch helpers for setting up state.
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";

export const baseUrl = (process.env.PHONE_AUTH_URL ?? "").replace(/\/+$/, "");
if (!baseUrl) {
  throw new Error("PHONE_AUTH_URL is not set: run the suite through tests/clients/run.sh");
}
export const graphqlUrl = `${baseUrl}/graphql`;
export const artifactsDir = process.env.ARTIFACTS_DIR ?? "artifacts";

/**
 * A Russian mobile number no other test (nor an earlier run on the same database) uses:
 * `requestCode` has a per-phone cooldown.
 */
export function freshPhone() {
  return `+7912${String(randomInt(0, 10_000_000)).padStart(7, "0")}`;
}

/** POST /graphql with plain fetch; returns the parsed body and asserts a 200. */
export async function gql(query, variables = {}, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(graphqlUrl, {
    method: "POST",
    headers,
    body: JSON.stringify({ query, variables }),
  });
  assert.equal(response.status, 200, `POST /graphql answered ${response.status}`);
  return response.json();
}
