// What crosses Redis between the API node and the workers: a job's request (JSON in the flux:jobs entry) and its
// events (one flux:job:<id>:events stream entry each, flat field/value pairs; a step's preview PNG as raw bytes).
// Keys and names of the protocol live here so both roles agree.
#pragma once

#include <string>
#include <vector>

#include "cluster/redis.h"
#include "engine/job.h"

namespace flux::cluster {

inline const std::string kJobsStream = "flux:jobs";  // entries: job=<id> request=<json>
inline const std::string kGroup = "workers";         // the consumer group every worker reads in
inline const std::string kModelKey = "flux:model";   // {"model", "variant"}: set by a worker once loaded
inline std::string events_key(const std::string& id) { return "flux:job:" + id + ":events"; }
inline std::string png_key(const std::string& id) { return "flux:job:" + id + ":png"; }
inline std::string cancel_key(const std::string& id) { return "flux:job:" + id + ":cancel"; }

// Throws Error when the request uses what cannot cross nodes yet (an init image, LoRAs, explicit noise).
std::string request_to_json(const GenerateRequest& request);
// Throws Error naming the field when the JSON is not a request.
GenerateRequest request_from_json(const std::string& text);

// XADD field/value pairs of one event; `worker` names the node that ran it. Completed events carry the result's
// numbers (the PNG itself is stored under png_key).
std::vector<std::string> event_fields(const JobEvent& event, const std::string& worker);
// The inverse (the result of a completed event holds its numbers but no image: the caller attaches it). Throws
// Error naming the field.
JobEvent event_from_fields(const Reply& fields, const std::string& job_id, std::string* worker = nullptr);
// True when the type field of an event entry names a terminal event.
bool is_terminal_fields(const Reply& fields);

// Creates the consumer group (and the stream) when missing; ignores "BUSYGROUP".
void ensure_group(RedisConnection& redis);

}  // namespace flux::cluster
