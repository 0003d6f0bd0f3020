// Code a TypeScript client would write against the types codegen generates from schema.graphql
// and the README's operations (operations.graphql). `tsc --strict --noEmit` must accept it, and
// every `@ts-expect-error` below must still be an error: that proves the types are precise (a
// nullable field stays nullable, an unselected field is absent), not `any`.
//
// The README's operations are anonymous, so codegen names them by position:
// Unnamed_<n>_<Kind>, n counting the operations of operations.graphql from 1.
import type {
  Unnamed_1_Mutation as RequestCode,
  Unnamed_2_Mutation as VerifyCode,
  Unnamed_3_Query as Me,
  Unnamed_4_Subscription as InvitedUserJoined,
  Unnamed_5_Mutation as ActivateInvite,
  Unnamed_6_Mutation as RefreshToken,
  Unnamed_7_Mutation as Logout,
  Unnamed_8_Mutation as LogoutAll,
  Unnamed_9_Query as Users,
  Unnamed_9_QueryVariables as UsersVariables,
  RequestPhoneChangeMutation as RequestPhoneChange,
  ConfirmPhoneChangeMutation as ConfirmPhoneChange,
  DeleteAccountMutation as DeleteAccount,
} from "./generated/graphql";

export function devCode(response: RequestCode): string {
  // null unless the server runs with OTP_EXPOSE: the type makes the caller decide.
  return response.requestCode.devCode ?? "(sent by SMS)";
}

export function authorizationHeader(response: VerifyCode): Record<string, string> {
  const { tokenType, accessToken } = response.verifyCode;
  return { Authorization: `${tokenType} ${accessToken}` };
}

export function nextInviteesCursor(response: Me): string | null {
  const { pageInfo } = response.me.invitedUsers;
  return pageInfo.hasNextPage ? pageInfo.endCursor : null;
}

export function inviteePhones(response: Me): string[] {
  return response.me.invitedUsers.nodes.map((user) => user.phone);
}

export function joinedPhone(event: InvitedUserJoined): string {
  return event.invitedUserJoined.phone;
}

export function activated(response: ActivateInvite): boolean {
  return response.activateInvite.activatedInviteCode !== null;
}

export function secondsLeft(response: RefreshToken): number {
  return response.refreshToken.expiresIn;
}

export function signedOut(logout: Logout, all: LogoutAll): string {
  return `${logout.logout ? "signed out" : "already signed out"}; ${all.logoutAll} sign-ins revoked`;
}

export function adminTable(response: Users): Array<[string, string, number]> {
  return response.users.edges.map(({ cursor, node }) => [
    cursor,
    node.inviteCode,
    node.invitedUsers.totalCount,
  ]);
}

// The README's operations take no variables.
export const noVariables: UsersVariables = {};

export function strictness(request: RequestCode, me: Me, users: Users): void {
  // @ts-expect-error devCode is `string | null`: it is absent in production.
  const code: string = request.requestCode.devCode;
  // @ts-expect-error activatedInviteCode is nullable.
  const invitedWith: string = me.me.activatedInviteCode;
  // @ts-expect-error the README's users query does not select createdAt.
  const created = users.users.edges[0]?.node.createdAt;
  // @ts-expect-error endCursor is null on an empty page.
  const cursor: string = me.me.invitedUsers.pageInfo.endCursor;
  void [code, invitedWith, created, cursor];
}

export function changeCodeSentTo(response: RequestPhoneChange): string {
  // @ts-expect-error devCode is `string | null`, as for requestCode.
  const code: string = response.requestPhoneChange.devCode;
  void code;
  return response.requestPhoneChange.phone;
}

export function movedTo(response: ConfirmPhoneChange): string {
  // @ts-expect-error createdAt was not selected
  void response.confirmPhoneChange.createdAt;
  return response.confirmPhoneChange.phone;
}

export function accountDeleted(response: DeleteAccount): boolean {
  return response.deleteAccount;
}
