// The GraphQL-over-HTTP audit suite of the `graphql-http` package (the reference
// implementation's own checks of the spec) against the running server: one test per audit.
//
// Every MUST and every SHOULD has to pass, and so does every MAY the server implements; the
// audits we do not pass on purpose are listed in EXPECTED_NOT_OK with the reason (and in
// docs/testing.md), and are reported as skipped, not hidden.
import { test } from "node:test";
import assert from "node:assert/strict";
import { serverAudits } from "graphql-http";

import { graphqlUrl } from "./support.js";

/** audit id -> why the server answers differently (none today; see docs/testing.md). */
export const EXPECTED_NOT_OK = {};

const audits = serverAudits({ url: graphqlUrl });
const results = [];

for (const audit of audits) {
  const level = audit.name.split(" ")[0]; // MUST, SHOULD or MAY
  const reason = EXPECTED_NOT_OK[audit.id];
  test(`${audit.id} ${audit.name}`, { skip: reason ? `expected: ${reason}` : false }, async () => {
    const result = await audit.fn();
    results.push({ id: audit.id, level, status: result.status });
    if (result.status !== "ok") {
      const response = result.response
        ? `${result.response.status} ${await result.response.text().catch(() => "")}`
        : "";
      assert.fail(`${level} audit ${audit.id} is ${result.status}: ${result.reason} ${response}`);
    }
  });
}

test("audit summary", () => {
  const count = (level, status) =>
    results.filter((r) => r.level === level && (!status || r.status === status)).length;
  for (const level of ["MUST", "SHOULD", "MAY"]) {
    console.log(`graphql-http ${level}: ${count(level, "ok")}/${count(level)} ok`);
  }
  assert.ok(audits.length > 50, `graphql-http ships ${audits.length} audits`);
});
