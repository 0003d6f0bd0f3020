// graphql-codegen with `schema: <URL>/graphql`, as a frontend project configures it against a
// running development server: the schema types it generates must equal those it generates from
// schema.graphql.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { graphqlUrl } from "./support.js";

const here = dirname(fileURLToPath(import.meta.url));

test("graphql-codegen from the server's URL generates the types schema.graphql does", () => {
  const out = join(here, "generated-url");
  rmSync(out, { recursive: true, force: true });
  const result = spawnSync(
    join(here, "node_modules", ".bin", "graphql-codegen"),
    ["--config", "codegen-url.ts", "--silent"],
    { cwd: here, encoding: "utf8", env: { ...process.env, SCHEMA_URL: graphqlUrl } },
  );
  assert.equal(result.status, 0, `graphql-codegen failed:\n${result.stdout}\n${result.stderr}`);
  const fromUrl = readFileSync(join(out, "schema-from-url.ts"), "utf8");
  const fromFile = readFileSync(join(out, "schema-from-file.ts"), "utf8");
  for (const type of ["export type Query", "export type Mutation", "export type User", "invitedUsers"]) {
    assert.ok(fromUrl.includes(type), `${type} is generated from the URL`);
  }
  // Field descriptions come through from the URL as JSDoc...
  assert.ok(fromUrl.includes("The signed-in user."), "descriptions are generated from the URL");
  // ...but codegen's typescript plugin writes a custom scalar's description only from an SDL
  // file (it reads the scalar's AST node, which an introspected schema lacks), so the types are
  // compared without JSDoc comments.
  const types = (source) => source.replace(/^[ \t]*\/\*\*[\s\S]*?\*\/\n/gm, "");
  assert.equal(types(fromUrl), types(fromFile));
});
