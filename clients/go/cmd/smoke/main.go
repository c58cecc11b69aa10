// Command smoke is the Go client's smoke program: one session against a running
// shopmesh, through the edge's gRPC listener.
//
// It registers, logs in, reads the account back (GetMe, GetUser), and decodes the
// error of an invalid registration (ErrorInfo reason, BadRequest field violations).
// With -with-orders it also lists products, places an order and reads it back.
// It prints one JSON object with what it saw and exits non-zero when a step fails.
//
//	go run ./cmd/smoke -edge 127.0.0.1:8080 -email ada@example.com -password 'correct horse battery'
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"sort"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/shopmesh/shopmesh/clients/go/shopmesh/inventory/v1"
	orderv1 "github.com/shopmesh/shopmesh/clients/go/shopmesh/order/v1"
	userv1 "github.com/shopmesh/shopmesh/clients/go/shopmesh/user/v1"
)

const timeout = 15 * time.Second

func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// decodeError returns the status code, ErrorInfo and BadRequest details of a failed call.
func decodeError(err error) map[string]any {
	st := status.Convert(err)
	result := map[string]any{"errorCode": codeName(st.Code().String()), "errorReason": "", "errorDomain": ""}
	fields := []string{}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			result["errorReason"] = d.GetReason()
			result["errorDomain"] = d.GetDomain()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	sort.Strings(fields)
	result["violations"] = fields
	return result
}

// codeName spells a gRPC code as the other clients do (InvalidArgument -> INVALID_ARGUMENT).
func codeName(camel string) string {
	out := []rune{}
	for i, r := range camel {
		if i > 0 && r >= 'A' && r <= 'Z' {
			out = append(out, '_')
		}
		if r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		out = append(out, r)
	}
	return string(out)
}

func uuid4() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		log.Fatalf("smoke: %v", err)
	}
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func orders(conn *grpc.ClientConn, token, userID string, result map[string]any) {
	ctx, cancel := context.WithTimeout(withToken(context.Background(), token), timeout)
	defer cancel()
	products, err := inventoryv1.NewInventoryServiceClient(conn).ListProducts(ctx, &inventoryv1.ListProductsRequest{PageSize: 10})
	if err != nil {
		log.Fatalf("smoke: ListProducts: %v", err)
	}
	var product *inventoryv1.Product
	for _, p := range products.GetProducts() {
		if p.GetStockAvailable() > 0 {
			product = p
			break
		}
	}
	if product == nil {
		log.Fatal("smoke: ListProducts returned no product in stock")
	}
	stub := orderv1.NewOrderServiceClient(conn)
	created, err := stub.CreateOrder(ctx, &orderv1.CreateOrderRequest{
		UserId: userID,
		Items:  []*orderv1.OrderItemInput{{ProductId: product.GetId(), Quantity: 1, Price: product.GetPrice()}},
		ShippingAddress: &orderv1.ShippingAddress{
			Street: "1 Analytical Way", City: "London", State: "LDN", ZipCode: "N1 9GU", Country: "GB",
		},
		RequestId: uuid4(),
	})
	if err != nil {
		log.Fatalf("smoke: CreateOrder: %v", err)
	}
	read, err := stub.GetOrder(ctx, &orderv1.GetOrderRequest{Id: created.GetId()})
	if err != nil {
		log.Fatalf("smoke: GetOrder: %v", err)
	}
	if read.GetId() != created.GetId() || read.GetUserId() != userID {
		log.Fatal("smoke: GetOrder did not return the order just created")
	}
	result["productId"] = product.GetId()
	result["orderId"] = read.GetId()
	result["orderStatus"] = read.GetStatus().String()
}

func main() {
	edge := flag.String("edge", "127.0.0.1:8080", "the edge's host:port (plaintext h2c)")
	email := flag.String("email", "", "the account to register")
	password := flag.String("password", "", "its password")
	withOrders := flag.Bool("with-orders", false, "also list products, create and read an order")
	flag.Parse()
	if *email == "" || *password == "" {
		log.Fatal("smoke: -email and -password are required")
	}

	conn, err := grpc.NewClient(*edge, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatalf("smoke: dial %s: %v", *edge, err)
	}
	defer conn.Close()
	users := userv1.NewUserServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	registered, err := users.RegisterUser(ctx, &userv1.RegisterUserRequest{
		Email: *email, Password: *password, FirstName: "Ada", LastName: "Lovelace",
	})
	if err != nil {
		log.Fatalf("smoke: RegisterUser: %v", err)
	}
	login, err := users.Login(ctx, &userv1.LoginRequest{Email: *email, Password: *password})
	if err != nil {
		log.Fatalf("smoke: Login: %v", err)
	}
	_, err = users.RegisterUser(ctx, &userv1.RegisterUserRequest{
		Email: "not-an-email", Password: "x", FirstName: "A", LastName: "L",
	})
	if err == nil {
		log.Fatal("smoke: an invalid registration was accepted")
	}
	result := decodeError(err)

	authed := withToken(ctx, login.GetToken())
	me, err := users.GetMe(authed, &userv1.GetMeRequest{})
	if err != nil {
		log.Fatalf("smoke: GetMe: %v", err)
	}
	if me.GetId() != registered.GetUser().GetId() {
		log.Fatal("smoke: GetMe is not the registered account")
	}
	again, err := users.GetUser(authed, &userv1.GetUserRequest{Id: me.GetId()})
	if err != nil {
		log.Fatalf("smoke: GetUser: %v", err)
	}
	if again.GetEmail() != me.GetEmail() {
		log.Fatal("smoke: GetUser disagrees with GetMe")
	}
	result["userId"] = me.GetId()
	result["email"] = me.GetEmail()
	if *withOrders {
		orders(conn, login.GetToken(), me.GetId(), result)
	}
	if err := json.NewEncoder(os.Stdout).Encode(result); err != nil {
		log.Fatalf("smoke: %v", err)
	}
}
