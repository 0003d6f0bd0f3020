// "Log out other devices" through Apollo Client, as an app runs it: one phone signed in on two
// devices (two verifyCodes, each with its own User-Agent); `sessions` lists both newest first
// with `current` on the caller's own, also after a refresh; revokeSession ends the other
// device's sign-in (its access token and its refresh token stop at once) and leaves the
// caller's.
//
// Codes sent: two, to one phone, so the test waits out the resend cooldown
// (OTP_RESEND_COOLDOWN_SECONDS, 60 s) between the two sign-ins.
import { test } from "node:test";
import assert from "node:assert/strict";
import { gql } from "@apollo/client/core";

import { apolloClient as client, graphqlError } from "./apollo-support.js";
import { ME, REFRESH, REQUEST_CODE, VERIFY_CODE } from "./app-operations.js";
import { freshPhone } from "./support.js";

const SESSIONS = gql`
  query Sessions {
    sessions {
      id
      createdAt
      lastUsedAt
      userAgent
      current
    }
  }
`;
const REVOKE_SESSION = gql`
  mutation RevokeSession($id: ID!) {
    revokeSession(id: $id)
  }
`;

async function signIn(phone, userAgent) {
  const device = client({ userAgent });
  const { data: requested } = await device.mutate({ mutation: REQUEST_CODE, variables: { phone } });
  const { data } = await device.mutate({
    mutation: VERIFY_CODE,
    variables: { phone, code: requested.requestCode.devCode },
  });
  return { ...data.verifyCode, resendAvailableAt: requested.requestCode.resendAvailableAt };
}

async function sessionsOf(accessToken) {
  const { data } = await client({ accessToken }).query({ query: SESSIONS });
  return data.sessions;
}

test("sessions and revokeSession through Apollo Client", { timeout: 150_000 }, async () => {
  const phone = freshPhone();
  const laptop = await signIn(phone, "Laptop/1.0");
  const wait = Date.parse(laptop.resendAvailableAt) - Date.now() + 1_000;
  await new Promise((resolve) => setTimeout(resolve, Math.max(wait, 0)));
  const handset = await signIn(phone, "Handset/2.0");

  // Newest first; `current` is the caller's own sign-in.
  const seenByHandset = await sessionsOf(handset.accessToken);
  assert.equal(seenByHandset.length, 2);
  assert.deepEqual(
    seenByHandset.map((s) => [s.userAgent, s.current]),
    [
      ["Handset/2.0", true],
      ["Laptop/1.0", false],
    ],
  );
  assert.ok(Date.parse(seenByHandset[0].createdAt) >= Date.parse(seenByHandset[1].createdAt));

  // After a refresh the laptop's new access token still marks the laptop's sign-in current.
  const { data: refreshed } = await client().mutate({
    mutation: REFRESH,
    variables: { refreshToken: laptop.refreshToken },
  });
  const laptopNow = refreshed.refreshToken;
  const seenByLaptop = await sessionsOf(laptopNow.accessToken);
  assert.deepEqual(
    seenByLaptop.map((s) => [s.userAgent, s.current]),
    [
      ["Handset/2.0", false],
      ["Laptop/1.0", true],
    ],
  );

  // The handset logs the laptop out.
  const laptopId = seenByHandset[1].id;
  const { data: revoked } = await client({ accessToken: handset.accessToken }).mutate({
    mutation: REVOKE_SESSION,
    variables: { id: laptopId },
  });
  assert.equal(revoked.revokeSession, true);

  // The laptop's access token and refresh token are dead at once; the handset's are not.
  const meError = await graphqlError(client({ accessToken: laptopNow.accessToken }).query({ query: ME }));
  assert.equal(meError.extensions.code, "UNAUTHENTICATED");
  const refreshError = await graphqlError(
    client().mutate({ mutation: REFRESH, variables: { refreshToken: laptopNow.refreshToken } }),
  );
  assert.equal(refreshError.extensions.code, "UNAUTHENTICATED");
  const { data: me } = await client({ accessToken: handset.accessToken }).query({ query: ME });
  assert.ok(me.me.id);
  const left = await sessionsOf(handset.accessToken);
  assert.deepEqual(
    left.map((s) => [s.userAgent, s.current]),
    [["Handset/2.0", true]],
  );

  // Revoking it again, or someone else's id, answers false.
  const { data: again } = await client({ accessToken: handset.accessToken }).mutate({
    mutation: REVOKE_SESSION,
    variables: { id: laptopId },
  });
  assert.equal(again.revokeSession, false);
});
