// What crosses Redis between the API node and the workers: a job's request (JSON in the flux:jobs entry) and its
// events (one flux:job:<id>:events stream entry each, flat field/value pairs; a step's preview PNG as raw bytes).
// Keys and names of the protocol live here so both roles agree.
#pragma once

#include <string>
#include <vector>

#include "cluster/redis.h"
#include "engine/job.h"

namespace flux::cluster {

inline const std::string kJobsStream = "flux:jobs";  // entries: job=<id> + JobPayload's fields
inline const std::string kGroup = "workers";         // the consumer group every worker reads in
inline const std::string kModelKey = "flux:model";   // {"model", "variant"}: set by a worker once loaded
inline std::string events_key(const std::string& id) { return "flux:job:" + id + ":events"; }
inline std::string png_key(const std::string& id) { return "flux:job:" + id + ":png"; }
inline std::string cancel_key(const std::string& id) { return "flux:job:" + id + ":cancel"; }
// The entry id that runs the job: SET NX by the worker that claims it first; an entry of the same job with another
// id is a duplicate (an XADD sent again after its reply was lost, or after Redis lost the stream).
inline std::string owner_key(const std::string& id) { return "flux:job:" + id + ":owner"; }
// What each live worker offers ({"model", "variant", "loras": [{name, size, format}]}), with a TTL its heartbeat
// refreshes; flux:workers holds the names (an API node drops those whose key expired).
inline const std::string kWorkersKey = "flux:workers";
inline std::string worker_key(const std::string& name) { return "flux:worker:" + name; }
// Set (NX) by each API node when it connects; gone after a reconnection = Redis restarted without its data.
inline const std::string kEpochKey = "flux:epoch";

// A flux:jobs entry after job=<id>: request=<json> [image=<PNG>] [noise=<F32 values, little-endian>] (stream
// fields are binary-safe). The JSON holds prompt, width, height, steps, guidance, seed, preview, strength, loras
// [{name, strength}] and, with explicit noise, noise_shape.
struct JobPayload {
  std::string request;
  std::string image;  // the init image as PNG ("" = text-to-image)
  std::string noise;  // explicit noise ("" = from the seed)
};
// `lora_dir`: the folder the request's LoRA paths were resolved in (they cross as names below it); "" when the
// paths are names already (serve --role api without --lora-dir). Encodes the init image: call it off the I/O
// thread. Throws Error naming the field.
JobPayload encode_request(const GenerateRequest& request, const std::string& lora_dir);
// The inverse; LoRAs come back as names (LoraSpec::path = the name) for resolve_loras. Throws Error naming the
// field.
GenerateRequest decode_request(const JobPayload& payload, uint64_t max_image_pixels = 4096ull * 4096ull);
std::vector<std::string> payload_fields(const JobPayload& payload);  // XADD field/value pairs
JobPayload payload_from_fields(const Reply& fields);
// Worker: each LoRA name resolved inside its own `lora_dir`, exactly as a single-process server does; throws Error
// with that server's text ("loras[0]: lora \"x\" not found in the LoRA folder ...").
void resolve_loras(GenerateRequest& request, const std::string& lora_dir);

// XADD field/value pairs of one event; `worker` names the node that ran it. Completed events carry the result's
// numbers (the PNG itself is stored under png_key).
std::vector<std::string> event_fields(const JobEvent& event, const std::string& worker);
// The inverse (the result of a completed event holds its numbers but no image: the caller attaches it). Throws
// Error naming the field.
JobEvent event_from_fields(const Reply& fields, const std::string& job_id, std::string* worker = nullptr);
// True when the type field of an event entry names a terminal event.
bool is_terminal_fields(const Reply& fields);

// `value` escaped for a Prometheus label (backslash, double quote, newline).
std::string prometheus_label(const std::string& value);

// Creates the consumer group (and the stream) when missing; ignores "BUSYGROUP".
void ensure_group(RedisConnection& redis);

}  // namespace flux::cluster
