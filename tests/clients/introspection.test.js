// Introspection from the running server, as tools ask for it: graphql-js's
// getIntrospectionQuery() with every option it has (GraphiQL, graphql-codegen, Postman and
// schema-diff tools send this query), over POST and GET. The schema built from the answer must
// equal schema.graphql, the repository's SDL.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  GraphQLSchema,
  buildClientSchema,
  buildSchema,
  getIntrospectionQuery,
  lexicographicSortSchema,
  printSchema,
} from "graphql";

import { graphqlUrl } from "./support.js";

const here = dirname(fileURLToPath(import.meta.url));
const sdlFile = join(here, "..", "..", "schema.graphql");

const EVERY_OPTION = {
  descriptions: true,
  specifiedByUrl: true,
  directiveIsRepeatable: true,
  schemaDescription: true,
  inputValueDeprecation: true,
  oneOf: true,
};

/** A schema printed in a canonical form: sorted, without the schema's own description. */
function canonical(schema) {
  const config = schema.toConfig();
  return printSchema(lexicographicSortSchema(new GraphQLSchema({ ...config, description: undefined })));
}

/**
 * schema.graphql, canonical. Without the specifiedByUrl option the query does not ask for a
 * scalar's specification, so the comparison leaves out the file's `@specifiedBy` too.
 */
const fromFile = (options) => {
  const printed = canonical(buildSchema(readFileSync(sdlFile, "utf8")));
  return options?.specifiedByUrl ? printed : printed.replace(/ @specifiedBy\(url: "[^"]*"\)/g, "");
};

for (const [label, options] of [
  ["defaults", undefined],
  ["every option", EVERY_OPTION],
]) {
  test(`getIntrospectionQuery (${label}) over POST is answered and equals schema.graphql`, async () => {
    const response = await fetch(graphqlUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: getIntrospectionQuery(options) }),
    });
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.equal(body.errors, undefined, JSON.stringify(body.errors));
    assert.equal(canonical(buildClientSchema(body.data)), fromFile(options));
  });
}

test("getIntrospectionQuery (every option) over GET is answered", async () => {
  const url = new URL(graphqlUrl);
  url.searchParams.set("query", getIntrospectionQuery(EVERY_OPTION));
  const response = await fetch(url);
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  assert.equal(canonical(buildClientSchema(body.data)), fromFile(EVERY_OPTION));
});
