// Asio's OpenSSL support compiled once for the whole program (BOOST_ASIO_SEPARATE_COMPILATION);
// used by the Twitch PubSub client for https:// endpoints.
#include <boost/asio/ssl/impl/src.hpp>
