/**
 * @module infra/aws
 * The only importer of @aws-sdk: SNS and SQS clients built from configuration, and thin typed
 * calls for what the cluster bus needs (publish, receive, delete, queue depth). Callers see plain
 * data and `AwsCallError`; they never handle SDK types. Credentials come from the SDK's default
 * provider chain (environment, ECS task role, instance profile), not from our configuration.
 */
import {
  CreateTopicCommand,
  PublishBatchCommand,
  SNSClient,
  SubscribeCommand,
  type PublishBatchRequestEntry,
} from '@aws-sdk/client-sns'
import {
  ChangeMessageVisibilityBatchCommand,
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SetQueueAttributesCommand,
  SQSClient,
} from '@aws-sdk/client-sqs'

export interface AwsTarget {
  region: string
  /** An emulator (fauxqs, LocalStack) instead of AWS. */
  endpoint?: string
}

/** A call to SNS or SQS failed (network, throttling, service error, or a rejected batch entry). */
export class AwsCallError extends Error {
  override name = 'AwsCallError'
}

/**
 * Every call is bounded twice (issue 14: with the SNS endpoint frozen, an ingest request hung for
 * the whole outage). The SDK's `requestTimeout` alone only logs a warning unless
 * `throwOnRequestTimeout` is set, so it is set; and each call carries an AbortSignal for its
 * whole duration, the SDK's retries included, which is what bounds the caller.
 */
const CONNECT_TIMEOUT_MS = 2_000
/** One SNS or SQS attempt (not a long poll): a hung socket is given up and the SDK retries. */
const ATTEMPT_TIMEOUT_MS = 2_000
/** A whole call, retries included: on the ingest path this is the wait before a 503. */
export const CALL_DEADLINE_MS = 5_000
/** Above a receive's long poll: the socket may stay silent that long. */
const LONG_POLL_MARGIN_MS = 5_000

export function createSnsClient(target: AwsTarget): SNSClient {
  return new SNSClient({
    region: target.region,
    ...(target.endpoint ? { endpoint: target.endpoint } : {}),
    maxAttempts: 3,
    requestHandler: { requestTimeout: ATTEMPT_TIMEOUT_MS, connectionTimeout: CONNECT_TIMEOUT_MS, throwOnRequestTimeout: true },
  })
}

/**
 * `waitTimeS`: the long poll. The client-wide request timeout must outlast it; the other calls
 * get the short one per call (see `call`).
 */
export function createSqsClient(target: AwsTarget, waitTimeS = 20): SQSClient {
  return new SQSClient({
    region: target.region,
    // With an explicit endpoint the SDK keeps it rather than the queue URL's host.
    ...(target.endpoint ? { endpoint: target.endpoint } : {}),
    maxAttempts: 3,
    requestHandler: {
      requestTimeout: waitTimeS * 1000 + LONG_POLL_MARGIN_MS,
      connectionTimeout: CONNECT_TIMEOUT_MS,
      throwOnRequestTimeout: true,
    },
  })
}

export type { SNSClient, SQSClient }

export interface PublishEntry {
  id: string
  body: string
  groupId: string
  dedupeId: string
  attributes: Record<string, string>
}

/** PublishBatch (≤ 10 entries); resolves only when every entry was accepted. */
export async function publishBatch(
  sns: SNSClient,
  topicArn: string,
  entries: PublishEntry[],
  signal?: AbortSignal,
): Promise<void> {
  const out = await call(
    (o) =>
      sns.send(
        new PublishBatchCommand({
          TopicArn: topicArn,
          PublishBatchRequestEntries: entries.map((e): PublishBatchRequestEntry => ({
            Id: e.id,
            Message: e.body,
            MessageGroupId: e.groupId,
            MessageDeduplicationId: e.dedupeId,
            MessageAttributes: Object.fromEntries(
              Object.entries(e.attributes).map(([k, v]) => [k, { DataType: 'String', StringValue: v }]),
            ),
          })),
        }),
        o,
      ),
    { signal },
  )
  const failed = out.Failed ?? []
  if (failed.length > 0 || (out.Successful?.length ?? 0) !== entries.length) {
    const f = failed[0]
    throw new AwsCallError(
      `SNS rejected ${failed.length || entries.length - (out.Successful?.length ?? 0)} of ${entries.length} entries` +
        (f ? ` (${f.Code}: ${f.Message ?? ''})` : ''),
    )
  }
}

export interface ReceivedMessage {
  messageId: string
  receiptHandle: string
  body: string
  /** System attribute; the org id for our messages. */
  groupId: string | undefined
  receiveCount: number
  /** When SQS accepted it (epoch ms; SNS delivers at once): the consumer lag. */
  sentAt: number
  /** When it was first received (epoch ms): about its first failure when it fails. */
  firstReceivedAt: number
}

export interface ReceiveOptions {
  max: number
  waitTimeS: number
  visibilityTimeoutS: number
  /**
   * FIFO queues: the SDK resends the same command on a retry, and the caller reuses the id for a
   * receive it abandoned (timed out), so either gets the messages of the lost answer back instead
   * of leaving them hidden for the visibility timeout.
   */
  attemptId?: string
}

export async function receiveMessages(sqs: SQSClient, queueUrl: string, o: ReceiveOptions): Promise<ReceivedMessage[]> {
  const out = await call(
    (opts) =>
      sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: o.max,
          WaitTimeSeconds: o.waitTimeS,
          VisibilityTimeout: o.visibilityTimeoutS,
          ...(o.attemptId ? { ReceiveRequestAttemptId: o.attemptId } : {}),
          MessageSystemAttributeNames: [
            'MessageGroupId',
            'ApproximateReceiveCount',
            'SentTimestamp',
            'ApproximateFirstReceiveTimestamp',
          ],
        }),
        opts,
      ),
    // The long poll, one retry's worth of time after it, and no more.
    { deadlineMs: o.waitTimeS * 1000 + LONG_POLL_MARGIN_MS + ATTEMPT_TIMEOUT_MS },
  )
  const now = Date.now()
  return (out.Messages ?? []).map((m) => ({
    messageId: m.MessageId ?? '',
    receiptHandle: m.ReceiptHandle ?? '',
    body: m.Body ?? '',
    groupId: m.Attributes?.MessageGroupId,
    receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? 1),
    sentAt: Number(m.Attributes?.SentTimestamp ?? now) || now,
    firstReceivedAt: Number(m.Attributes?.ApproximateFirstReceiveTimestamp ?? now) || now,
  }))
}

export interface SendEntry {
  body: string
  groupId: string
  dedupeId: string
  attributes: Record<string, string>
}

/** SendMessage to a FIFO queue (a dead letter's redrive to the queue it came from). */
export async function sendMessage(sqs: SQSClient, queueUrl: string, e: SendEntry): Promise<void> {
  await call((o) =>
    sqs.send(
      new SendMessageCommand({
        QueueUrl: queueUrl,
        MessageBody: e.body,
        MessageGroupId: e.groupId,
        MessageDeduplicationId: e.dedupeId,
        MessageAttributes: Object.fromEntries(
          Object.entries(e.attributes).map(([k, v]) => [k, { DataType: 'String', StringValue: v }]),
        ),
      }),
      o,
    ),
  )
}

/** Deletes up to 10 messages; returns the receipt handles SQS did not delete. */
export async function deleteMessages(sqs: SQSClient, queueUrl: string, receiptHandles: string[]): Promise<string[]> {
  const out = await call((o) =>
    sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: receiptHandles.map((h, i) => ({ Id: String(i), ReceiptHandle: h })),
      }),
      o,
    ),
  )
  const ok = new Set((out.Successful ?? []).map((s) => s.Id))
  return receiptHandles.filter((_, i) => !ok.has(String(i)))
}

/** Sets the visibility timeout of up to 10 received messages; returns the handles SQS did not change. */
export async function changeVisibility(
  sqs: SQSClient,
  queueUrl: string,
  receiptHandles: string[],
  timeoutS: number,
): Promise<string[]> {
  const out = await call((o) =>
    sqs.send(
      new ChangeMessageVisibilityBatchCommand({
        QueueUrl: queueUrl,
        Entries: receiptHandles.map((h, i) => ({ Id: String(i), ReceiptHandle: h, VisibilityTimeout: timeoutS })),
      }),
      o,
    ),
  )
  const ok = new Set((out.Successful ?? []).map((s) => s.Id))
  return receiptHandles.filter((_, i) => !ok.has(String(i)))
}

/** Messages waiting plus in flight (received, not yet deleted): the consumer's backlog. */
export async function queueDepth(sqs: SQSClient, queueUrl: string): Promise<number> {
  const out = await call((o) =>
    sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: queueUrl,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }),
      o,
    ),
  )
  const a = out.Attributes ?? {}
  return Number(a.ApproximateNumberOfMessages ?? 0) + Number(a.ApproximateNumberOfMessagesNotVisible ?? 0)
}

export interface Topology {
  topicArn: string
  queueUrls: Record<string, string>
}

export interface TopologyOptions {
  /** Names: `<prefix>.fifo` topic, `<prefix>-<queue>.fifo` queues, `<prefix>-<queue>-dlq.fifo`. */
  prefix: string
  queues: readonly string[]
  visibilityTimeoutS: number
  /** Receives before SQS moves a message to the queue's DLQ. */
  maxReceiveCount: number
}

/**
 * Creates (idempotently) the FIFO topic, one FIFO queue per consumer with its FIFO dead-letter
 * queue, and raw-delivery subscriptions. Content-based deduplication is off: the publisher sets
 * MessageDeduplicationId itself (org id + content hash). For dev and tests; production creates
 * the same resources with its infrastructure tooling.
 */
export async function ensureTopology(sns: SNSClient, sqs: SQSClient, o: TopologyOptions): Promise<Topology> {
  const topic = await call((c) =>
    sns.send(
      new CreateTopicCommand({
        Name: `${o.prefix}.fifo`,
        Attributes: { FifoTopic: 'true', ContentBasedDeduplication: 'false' },
      }),
      c,
    ),
  )
  const topicArn = topic.TopicArn!
  const queueUrls: Record<string, string> = {}
  for (const name of o.queues) {
    const dlqUrl = await createFifoQueue(sqs, `${o.prefix}-${name}-dlq.fifo`)
    const dlqArn = await queueArn(sqs, dlqUrl)
    const url = await createFifoQueue(sqs, `${o.prefix}-${name}.fifo`)
    const arn = await queueArn(sqs, url)
    // Set apart from CreateQueue, which refuses an existing queue whose attributes differ: a
    // second run with another visibility timeout updates it instead of failing.
    await call((c) =>
      sqs.send(
        new SetQueueAttributesCommand({
          QueueUrl: url,
          Attributes: {
            VisibilityTimeout: String(o.visibilityTimeoutS),
            RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: o.maxReceiveCount }),
            // Real SQS drops SNS deliveries its policy does not allow (silently: SNS does not retry).
            Policy: JSON.stringify({
              Version: '2012-10-17',
              Statement: [
                {
                  Effect: 'Allow',
                  Principal: { Service: 'sns.amazonaws.com' },
                  Action: 'sqs:SendMessage',
                  Resource: arn,
                  Condition: { ArnEquals: { 'aws:SourceArn': topicArn } },
                },
              ],
            }),
          },
        }),
        c,
      ),
    )
    await call((c) =>
      sns.send(
        new SubscribeCommand({
          TopicArn: topicArn,
          Protocol: 'sqs',
          Endpoint: arn,
          Attributes: { RawMessageDelivery: 'true' },
          ReturnSubscriptionArn: true,
        }),
        c,
      ),
    )
    queueUrls[name] = url
  }
  return { topicArn, queueUrls }
}

async function createFifoQueue(sqs: SQSClient, name: string): Promise<string> {
  const out = await call((c) =>
    sqs.send(
      new CreateQueueCommand({
        QueueName: name,
        Attributes: { FifoQueue: 'true', ContentBasedDeduplication: 'false' },
      }),
      c,
    ),
  )
  return out.QueueUrl!
}

async function queueArn(sqs: SQSClient, url: string): Promise<string> {
  const out = await call((c) => sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }), c))
  return out.Attributes!.QueueArn!
}

export interface CallOptions {
  /** The whole call's bound, retries included (default CALL_DEADLINE_MS). */
  deadlineMs?: number
  /** The caller's own abort (a stopping consumer), besides the deadline. */
  signal?: AbortSignal
}

/**
 * Runs one SDK call under its deadline, and turns every SDK failure, whatever its class, into
 * one error type with the SDK error as cause. An aborted call is an AwsCallError too: to the
 * caller a frozen endpoint and a refusing one are the same outage.
 */
async function call<T>(fn: (options: { abortSignal: AbortSignal }) => Promise<T>, o: CallOptions = {}): Promise<T> {
  const deadline = AbortSignal.timeout(o.deadlineMs ?? CALL_DEADLINE_MS)
  const abortSignal = o.signal ? AbortSignal.any([deadline, o.signal]) : deadline
  try {
    return await fn({ abortSignal })
  } catch (err) {
    if (err instanceof AwsCallError) throw err
    const e = err as { name?: string; message?: string }
    if (abortSignal.aborted) {
      throw new AwsCallError(
        deadline.aborted ? `no answer within ${o.deadlineMs ?? CALL_DEADLINE_MS} ms (call abandoned)` : 'call aborted',
        {
          cause: err,
        },
      )
    }
    throw new AwsCallError(`${e.name ?? 'Error'}: ${e.message ?? String(err)}`, { cause: err })
  }
}
