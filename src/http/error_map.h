// The one place that maps core error codes to HTTP statuses and MEDKit error bodies.
#pragma once

#include "core/result.h"
#include "http/message.h"

namespace medkit::http {

int StatusFor(core::Errc code);

// {"reason": message[, "info": info]} with the status for error.code.
Response ErrorResponse(const core::Error& error);
Response ErrorResponse(int status, std::string_view reason);

}  // namespace medkit::http
