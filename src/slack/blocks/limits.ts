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
