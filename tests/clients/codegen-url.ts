import type { CodegenConfig } from "@graphql-codegen/cli";

// The schema types twice: from the running server (SCHEMA_URL, set by codegen-url.test.js, as a
// frontend project points codegen at its development server) and from the repository's SDL.
// The test compares the two files.
const url = process.env.SCHEMA_URL;
if (!url) throw new Error("SCHEMA_URL is not set: run codegen-url.test.js through run.sh");

const types = {
  plugins: ["typescript"],
  config: { scalars: { DateTime: "string" }, enumsAsTypes: true },
};

const config: CodegenConfig = {
  generates: {
    "generated-url/schema-from-url.ts": { schema: url, ...types },
    "generated-url/schema-from-file.ts": { schema: "../../schema.graphql", ...types },
  },
};

export default config;
