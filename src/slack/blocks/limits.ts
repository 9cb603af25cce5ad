/**
 * Slack's Block Kit limits, in one place. Builders cut text to these sizes
 * before Slack sees it, so a long argument or reason can never make Slack
 * refuse a card (invalid_blocks) and leave a call without a human to ask.
 * https://docs.slack.dev/reference/block-kit/blocks
 */
export const SlackLimits = {
  messageBlocks: 50,
  modalBlocks: 100,
  messageText: 40_000,
  /**
   * All the text in one message's blocks together. Not documented: Slack
   * answers msg_blocks_too_long from about 13,200 characters
   * (slackapi/bolt-js#2509), so builders of long messages stay under this.
   */
  messageBlocksTextSoft: 12_000,
  sectionText: 3000,
  sectionFields: 10,
  sectionFieldText: 2000,
  headerText: 150,
  contextElements: 10,
  contextText: 2000,
  actionsElements: 25,
  buttonText: 75,
  buttonValue: 2000,
  actionId: 255,
  blockId: 255,
  callbackId: 255,
  modalTitle: 24,
  modalButton: 24,
  privateMetadata: 3000,
  inputLabel: 2000,
  inputHint: 2000,
  placeholder: 150,
  plainTextInput: 3000,
} as const;
