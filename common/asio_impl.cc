// Boost.Asio, compiled once for all of dtx (BOOST_ASIO_SEPARATE_COMPILATION):
// every other translation unit sees only Asio's declarations, which keeps
// the build fast on small machines. Link dtx_asio to use Asio.
#include <boost/asio/impl/src.hpp>
